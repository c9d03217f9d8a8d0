// Writes a seeded random-weight HF safetensors checkpoint with the exact shapes of a real
// architecture (SmolLM2-135M, Llama-3.2-1B, Llama-2-7B), plus a byte-level tokenizer.json, so
// the pipeline's time and memory can be measured at real scale without a model hub.
//
//   make_random_hf --arch llama-3.2-1b --out /tmp/llama1b [--seed 1] [--dtype bf16]
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/safetensors.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace {

struct Arch {
  std::string name;
  int hidden, intermediate, layers, heads, kv_heads, vocab, max_pos;
  double rope_theta;
  bool tied;
};

const std::vector<Arch> kArchs = {
    {"smollm2-135m", 576, 1536, 30, 9, 3, 49152, 8192, 100000.0, true},
    {"llama-3.2-1b", 2048, 8192, 16, 32, 8, 128256, 131072, 500000.0, true},
    {"llama-2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0, false},
    // The smallest shape every ggml type fits (d_in multiples of 256), with exactly the byte
    // tokenizer's 259 tokens: for the engine check of the tests.
    {"tiny-256", 256, 512, 2, 4, 2, 259, 512, 10000.0, true},
};

nlohmann::json config_json(const Arch& a) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", a.hidden},
          {"intermediate_size", a.intermediate},
          {"num_hidden_layers", a.layers},
          {"num_attention_heads", a.heads},
          {"num_key_value_heads", a.kv_heads},
          {"vocab_size", a.vocab},
          {"max_position_embeddings", a.max_pos},
          {"rope_theta", a.rope_theta},
          {"rms_norm_eps", 1e-5},
          {"tie_word_embeddings", a.tied},
          {"hidden_act", "silu"},
          {"torch_dtype", "bfloat16"},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

// A byte-level BPE tokenizer.json with the 256 byte tokens and no merges: every byte is a
// token, which is all a random-weight model needs to be fed real text.
nlohmann::json byte_tokenizer_json() {
  // GPT-2's bytes-to-unicode map: printable bytes map to themselves, the rest to 256 + n.
  nlohmann::json vocab = nlohmann::json::object();
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    const int cp = printable ? b : 256 + n++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = b + 3;  // ids 0..2 are <unk>, <s>, </s>
  }
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
}

// Uniform values with the given standard deviation, seeded per tensor (fast: the weights
// only need the right shapes and scale, not a particular distribution).
std::function<std::vector<float>()> random_values(int64_t count, double std, uint64_t seed) {
  return [=] {
    std::vector<float> v(static_cast<size_t>(count));
    const double a = std * std::sqrt(3.0);
    const int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < count; c0 += chunk) {
      cdq::Rng rng(seed * 1000003ULL + static_cast<uint64_t>(c0 / chunk));
      for (int64_t i = c0; i < std::min(count, c0 + chunk); ++i)
        v[static_cast<size_t>(i)] = static_cast<float>((2.0 * rng.uniform() - 1.0) * a);
    }
    return v;
  };
}

void write_model(const Arch& a, const std::string& out, uint64_t seed, cdq::DType dtype) {
  namespace fs = std::filesystem;
  fs::create_directories(out);
  cdq::SafetensorsWriter w;
  uint64_t tensor_seed = seed * 7919ULL;
  const int head_dim = a.hidden / a.heads, kv = a.kv_heads * head_dim;
  auto add = [&](const std::string& name, int64_t rows, int64_t cols, double std) {
    w.add_float_producer(name, {rows, cols}, random_values(rows * cols, std, ++tensor_seed), dtype);
  };
  auto add_ones = [&](const std::string& name, int64_t n) {
    w.add_float_producer(
        name, {n}, [n] { return std::vector<float>(n, 1.0f); }, dtype);
  };
  add("model.embed_tokens.weight", a.vocab, a.hidden, 0.02);
  for (int l = 0; l < a.layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add_ones(p + "input_layernorm.weight", a.hidden);
    add_ones(p + "post_attention_layernorm.weight", a.hidden);
    add(p + "self_attn.q_proj.weight", a.hidden, a.hidden, 0.02);
    add(p + "self_attn.k_proj.weight", kv, a.hidden, 0.02);
    add(p + "self_attn.v_proj.weight", kv, a.hidden, 0.02);
    add(p + "self_attn.o_proj.weight", a.hidden, a.hidden, 0.02);
    add(p + "mlp.gate_proj.weight", a.intermediate, a.hidden, 0.02);
    add(p + "mlp.up_proj.weight", a.intermediate, a.hidden, 0.02);
    add(p + "mlp.down_proj.weight", a.hidden, a.intermediate, 0.02);
  }
  add_ones("model.norm.weight", a.hidden);
  if (!a.tied) add("lm_head.weight", a.vocab, a.hidden, 0.02);
  w.set_metadata("format", "pt");
  const auto shards = w.write_sharded(out, 2ULL << 30);
  std::ofstream(fs::path(out) / "config.json") << config_json(a).dump(2) << "\n";
  std::ofstream(fs::path(out) / "tokenizer.json") << byte_tokenizer_json().dump() << "\n";
  fmt::print("{}: {} layers, {:.2f} GB of weights in {} shard(s)\n", out, a.layers,
             static_cast<double>(w.total_bytes()) / 1e9, shards.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Seeded random-weight HF checkpoints with real architecture shapes"};
  std::string arch = "llama-3.2-1b", out, dtype = "bf16";
  uint64_t seed = 1;
  app.add_option("--arch", arch, "smollm2-135m, llama-3.2-1b, llama-2-7b or tiny-256")
      ->check(CLI::IsMember({"smollm2-135m", "llama-3.2-1b", "llama-2-7b", "tiny-256"}))
      ->capture_default_str();
  app.add_option("--out", out, "Output directory")->required();
  app.add_option("--seed", seed, "Seed")->capture_default_str();
  app.add_option("--dtype", dtype, "f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const cdq::DType dt = dtype == "f32"   ? cdq::DType::F32
                          : dtype == "f16" ? cdq::DType::F16
                                           : cdq::DType::BF16;
    for (const Arch& a : kArchs)
      if (a.name == arch) write_model(a, out, seed, dt);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
