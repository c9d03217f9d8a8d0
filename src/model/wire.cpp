#include "model/wire.hpp"

#include <cdquant/error.hpp>
#include <cstring>
#include <string>
#include <type_traits>

namespace cdq {

namespace {

class Writer {
 public:
  template <class T>
  void pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  template <class T>
  void vec(const std::vector<T>& v) {
    pod<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const std::byte*>(v.data());
    out_.insert(out_.end(), p, p + v.size() * sizeof(T));
  }
  void str(const std::string& s) { vec(std::vector<char>(s.begin(), s.end())); }
  void grid(const Grid& g) {
    pod(g.d_out);
    pod(g.d_in);
    pod(g.n_groups);
    pod(g.maxq);
    vec(g.g_idx);
    vec(g.scale);
    vec(g.bias);
    vec(g.zero);
    vec(g.levels);
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <class T>
  T pod() {
    T v;
    take(&v, sizeof(T));
    return v;
  }
  template <class T>
  std::vector<T> vec() {
    std::vector<T> v(pod<uint64_t>());
    take(v.data(), v.size() * sizeof(T));
    return v;
  }
  std::string str() {
    const auto c = vec<char>();
    return {c.begin(), c.end()};
  }
  Grid grid() {
    Grid g;
    g.d_out = pod<int64_t>();
    g.d_in = pod<int64_t>();
    g.n_groups = pod<int>();
    g.maxq = pod<int>();
    g.g_idx = vec<int32_t>();
    g.scale = vec<float>();
    g.bias = vec<float>();
    g.zero = vec<int32_t>();
    g.levels = vec<float>();
    return g;
  }
  void done() const { CDQ_ASSERT(pos_ == in_.size()); }

 private:
  void take(void* dst, size_t n) {
    CDQ_ASSERT(pos_ + n <= in_.size());
    if (n > 0) std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
  }
  std::span<const std::byte> in_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<std::byte> encode_result(const LinearResult& r) {
  Writer w;
  w.pod(r.layer);
  w.pod(r.linear);
  w.grid(r.grid);
  w.vec(r.codes);
  w.vec(r.sub_scale);
  w.pod(r.transform_export);
  w.str(r.transform);
  w.pod(r.objective);
  w.pod(r.relative);
  w.pod(r.seconds);
  w.pod<uint64_t>(r.notes.size());
  for (const auto& n : r.notes) w.str(n);
  return w.take();
}

LinearResult decode_result(std::span<const std::byte> bytes) {
  Reader rd(bytes);
  LinearResult r;
  r.layer = rd.pod<int>();
  r.linear = rd.pod<Linear>();
  r.grid = rd.grid();
  r.codes = rd.vec<uint8_t>();
  r.sub_scale = rd.vec<int16_t>();
  r.transform_export = rd.pod<TransformExport>();
  r.transform = rd.str();
  r.objective = rd.pod<double>();
  r.relative = rd.pod<double>();
  r.seconds = rd.pod<double>();
  r.notes.resize(rd.pod<uint64_t>());
  for (auto& n : r.notes) n = rd.str();
  rd.done();
  return r;
}

std::vector<std::byte> encode_constraint(const std::optional<GridConstraint>& c) {
  Writer w;
  w.pod<uint8_t>(c ? 1 : 0);
  if (c) {
    w.pod(c->kind);
    w.grid(c->grid);
    w.vec(c->sub_scale);
    w.pod(c->block_groups);
    w.pod(c->sub_lo);
    w.pod(c->sub_hi);
  }
  return w.take();
}

std::optional<GridConstraint> decode_constraint(std::span<const std::byte> bytes) {
  Reader rd(bytes);
  if (rd.pod<uint8_t>() == 0) {
    rd.done();
    return std::nullopt;
  }
  GridConstraint c;
  c.kind = rd.pod<GridKind>();
  c.grid = rd.grid();
  c.sub_scale = rd.vec<int16_t>();
  c.block_groups = rd.pod<int>();
  c.sub_lo = rd.pod<int>();
  c.sub_hi = rd.pod<int>();
  rd.done();
  return c;
}

}  // namespace cdq
