// engine_quantize: llama.cpp's own quantizer (llama_model_quantize of the shipped libllama) on
// a float GGUF, with no importance matrix or with one computed from calibration text, and a
// byte comparison of two GGUF files' tensors. For scripts/vs_llama_quantize.sh.
//
//   engine_quantize quantize IN.gguf OUT.gguf TYPE [--imatrix TEXT --nsamples N --seqlen L
//                   --seed S]
//   engine_quantize compare A.gguf B.gguf
//
// The importance matrix is what llama-imatrix collects, per quantized tensor the mean over
// the calibration tokens of each input's square, here from the float model's forward pass
// on the windows cdquant quantize --calib samples (sample_calibration_text, same nsamples,
// seqlen and seed). The C API takes it as an array of {tensor name, values, count}
// terminated by a null name (llama_model_quantize_params.imatrix).
#include <fmt/core.h>

#include <cdquant/calibration.hpp>
#include <cdquant/error.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"
#include "model/forward_blocks.hpp"
#include "model/gguf_arch.hpp"
#include "model/gguf_model_reader.hpp"

namespace {

struct FtypeName {
  const char* name;
  llama_ftype ftype;
};
constexpr FtypeName kFtypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32},          {"F16", LLAMA_FTYPE_MOSTLY_F16},
    {"BF16", LLAMA_FTYPE_MOSTLY_BF16},     {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},     {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},
    {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},     {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},
    {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},     {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K},     {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL},
    {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
};

llama_ftype parse_ftype(const std::string& s) {
  for (const FtypeName& f : kFtypes)
    if (s == f.name) return f.ftype;
  cdq::fail("unknown llama.cpp type '{}'", s);
}

// Sum of x^2 per input column and the number of rows, per GGUF tensor name.
struct Importance {
  std::map<std::string, std::vector<double>> sums;
  std::map<std::string, int64_t> counts;

  void add(const std::string& tensor, const cdq::Matrix& x) {
    auto& s = sums[tensor];
    s.resize(static_cast<size_t>(x.cols), 0.0);
    for (int64_t t = 0; t < x.rows; ++t)
      for (int64_t c = 0; c < x.cols; ++c) s[static_cast<size_t>(c)] += double(x(t, c)) * x(t, c);
    counts[tensor] += x.rows;
  }
};

const char* const kInputTensors[4][3] = {{"attn_q", "attn_k", "attn_v"},
                                         {"attn_output", nullptr, nullptr},
                                         {"ffn_gate", "ffn_up", nullptr},
                                         {"ffn_down", nullptr, nullptr}};

Importance collect_importance(const std::string& gguf, const std::string& text, int nsamples,
                              int seqlen, uint64_t seed) {
  const cdq::Model m = cdq::load_model(gguf);
  const auto tok = cdq::load_gguf_tokenizer(gguf);
  const auto windows = cdq::sample_calibration_text(cdq::read_file(text), *tok, nsamples, seqlen,
                                                    seed, true, tok->bos_id);
  Importance imp;
  for (const auto& w : windows) {
    cdq::Matrix x = cdq::embed_tokens(m.tok_embeddings, w);
    for (size_t l = 0; l < m.blocks.size(); ++l) {
      cdq::BlockInputsCallback cb = [&](cdq::BlockInput in, const cdq::Matrix& a) {
        for (const char* name : kInputTensors[static_cast<int>(in)])
          if (name != nullptr) imp.add(fmt::format("blk.{}.{}.weight", l, name), a);
      };
      cdq::block_forward(m.blocks[l], m.config, x, &cb);
    }
    if (!m.config.tied_embeddings) {
      cdq::Matrix n;
      cdq::rmsnorm_rows(x, m.final_norm, m.config.norm_eps, n);
      imp.add("output.weight", n);
    }
  }
  return imp;
}

int quantize(int argc, char** argv) {
  CDQ_CHECK(argc >= 5, "usage: engine_quantize quantize IN OUT TYPE [--imatrix TEXT ...]");
  const std::string in = argv[2], out = argv[3];
  llama_model_quantize_params p = llama_model_quantize_default_params();
  p.ftype = parse_ftype(argv[4]);
  p.nthread = 1;
  std::string text;
  int nsamples = 128, seqlen = 256;
  uint64_t seed = 0;
  for (int i = 5; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--imatrix")
      text = argv[i + 1];
    else if (a == "--nsamples")
      nsamples = std::stoi(argv[i + 1]);
    else if (a == "--seqlen")
      seqlen = std::stoi(argv[i + 1]);
    else if (a == "--seed")
      seed = std::stoull(argv[i + 1]);
    else
      cdq::fail("unknown option {}", a);
  }
  std::vector<std::vector<float>> values;
  std::vector<std::string> names;
  std::vector<llama_model_imatrix_data> table;
  if (!text.empty()) {
    const Importance imp = collect_importance(in, text, nsamples, seqlen, seed);
    for (const auto& [name, s] : imp.sums) {
      const double n = static_cast<double>(imp.counts.at(name));
      std::vector<float> v(s.size());
      for (size_t i = 0; i < s.size(); ++i) v[i] = static_cast<float>(s[i] / n);
      names.push_back(name);
      values.push_back(std::move(v));
    }
    for (size_t i = 0; i < names.size(); ++i)
      table.push_back({names[i].c_str(), values[i].data(), values[i].size()});
    table.push_back({nullptr, nullptr, 0});
    p.imatrix = table.data();
  }
  const uint32_t rc = llama_model_quantize(in.c_str(), out.c_str(), &p);
  CDQ_CHECK(rc == 0, "llama_model_quantize failed ({})", rc);
  fmt::print("{} -> {} ({}{})\n", in, out, argv[4],
             text.empty() ? ", no imatrix" : fmt::format(", imatrix from {}", text));
  return 0;
}

// Tensors of two files compared byte for byte, and the blocks of the quantized ones (32 or 256
// weights each) that differ.
int compare(int argc, char** argv) {
  CDQ_CHECK(argc == 4, "usage: engine_quantize compare A.gguf B.gguf");
  const cdq::GgufReader a(argv[2]), b(argv[3]);
  int tensors = 0, different = 0, type_differs = 0;
  int64_t blocks = 0, blocks_different = 0;
  for (const auto& ta : a.tensors()) {
    const cdq::GgufTensorInfo* tb = b.find_tensor(ta.name);
    CDQ_CHECK(tb != nullptr, "{}: no tensor {}", argv[3], ta.name);
    ++tensors;
    if (tb->type != ta.type) {
      ++type_differs;
      ++different;
      continue;
    }
    const auto da = a.tensor_bytes(ta), db = b.tensor_bytes(*tb);
    const auto& tr = cdq::ggml_traits(ta.type);
    if (!tr.quantized()) {  // float tensors: equal or not, no blocks
      different +=
          da.size() == db.size() && std::memcmp(da.data(), db.data(), da.size()) == 0 ? 0 : 1;
      continue;
    }
    const size_t bs = static_cast<size_t>(tr.type_size);
    bool diff = false;
    for (size_t o = 0; o + bs <= da.size(); o += bs) {
      ++blocks;
      if (std::memcmp(da.data() + o, db.data() + o, bs) != 0) {
        ++blocks_different;
        diff = true;
      }
    }
    different += diff ? 1 : 0;
  }
  fmt::print(
      "{{\"tensors\": {}, \"different\": {}, \"type_differs\": {}, \"blocks\": {}, "
      "\"blocks_different\": {}}}\n",
      tensors, different, type_differs, blocks, blocks_different);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  ggml_backend_load_all_from_path(CDQ_ENGINE_LIB_DIR);
  llama_backend_init();
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "quantize") return quantize(argc, argv);
    if (cmd == "compare") return compare(argc, argv);
    fmt::print(stderr, "usage: engine_quantize quantize|compare ...\n");
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "engine_quantize: {}\n", e.what());
    return 1;
  }
}
