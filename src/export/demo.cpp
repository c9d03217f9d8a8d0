#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/demo.hpp>
#include <cdquant/eval.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>

namespace cdq {

namespace {

struct DemoContext {
  std::unique_ptr<ModelReader> reader;
  Model float_model;
  std::vector<std::vector<int>> calibration;
  std::vector<int> test_stream;
};

DemoContext prepare(const DemoOptions& o) {
  DemoContext ctx;
  ctx.reader = open_model(o.model_path);
  ctx.float_model = load_model(*ctx.reader);
  const ModelConfig& c = ctx.float_model.config;
  const int seqlen = std::min(o.seqlen, c.max_seq_len);
  const auto tokenizer = tokenizer_for_model(o.model_path, o.tokenizer_path);
  ctx.calibration =
      calibration_from_file(o.calib_path, *tokenizer, o.nsamples, seqlen, o.seed, c.bos_id);
  ctx.test_stream = tokenizer->encode(read_file(o.test_path), false);
  return ctx;
}

DemoRow run_one(DemoContext& ctx, const DemoOptions& o, Method method, int bits, int group) {
  QuantizeOptions q;
  q.method = method;
  q.solver = o.solver;
  q.solver.grid.bits = bits;
  q.solver.grid.group_size = group;
  InMemoryModelWriter writer(*ctx.reader);
  const QuantizeSummary s =
      quantize_model(*ctx.reader, ctx.calibration, q,
                     [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                       writer.write_block(layer, block, linears);
                     });
  writer.finish();
  EvalOptions e;
  e.ctx = std::min(o.eval_ctx, ctx.float_model.config.max_seq_len);
  e.max_windows = o.max_windows;
  const EvalResult r = evaluate(ctx.float_model, ctx.test_stream, e, &writer.model());
  return {method, bits, group, r.ppl_other, r.kl, r.top1, s.mean_relative, s.seconds};
}

}  // namespace

DemoResult run_demo(const DemoOptions& o, const std::function<void(const DemoRow&)>& on_row) {
  DemoContext ctx = prepare(o);
  DemoResult result;
  EvalOptions e;
  e.ctx = std::min(o.eval_ctx, ctx.float_model.config.max_seq_len);
  e.max_windows = o.max_windows;
  const EvalResult base = evaluate(ctx.float_model, ctx.test_stream, e);
  result.float_ppl = base.ppl;
  result.eval_tokens = base.scored;
  result.calib_tokens = static_cast<int64_t>(ctx.calibration.size() * ctx.calibration[0].size());
  for (int group : o.groups)
    for (int bits : o.bits)
      for (Method m : o.methods) {
        result.rows.push_back(run_one(ctx, o, m, bits, group));
        if (on_row) on_row(result.rows.back());
      }
  return result;
}

}  // namespace cdq
