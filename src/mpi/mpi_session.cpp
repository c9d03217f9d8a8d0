#include "mpi/mpi_session.hpp"

#include <fmt/core.h>
// The C API only (OpenMPI would otherwise pull in its deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cstdio>
#include <cstdlib>

namespace cdq {

namespace {

// MPI counts are int: large matrices (a 70B ffn_down H is 3.3 GB) go in pieces.
constexpr size_t kPiece = size_t{1} << 30;

void check(int rc, const char* what) {
  CDQ_CHECK(rc == MPI_SUCCESS, "MPI: {} failed (code {})", what, rc);
}

}  // namespace

MpiSession::MpiSession(int& argc, char**& argv) {
  check(MPI_Init(&argc, &argv), "MPI_Init");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() {
  MPI_Finalize();
}

void MpiSession::send(std::span<const std::byte> data, int to) {
  for (size_t off = 0; off < data.size(); off += kPiece) {
    const auto n = static_cast<int>(std::min(kPiece, data.size() - off));
    check(MPI_Send(data.data() + off, n, MPI_BYTE, to, 0, MPI_COMM_WORLD), "MPI_Send");
  }
  bytes_ += static_cast<double>(data.size());
}

void MpiSession::recv(std::span<std::byte> data, int from) {
  for (size_t off = 0; off < data.size(); off += kPiece) {
    const auto n = static_cast<int>(std::min(kPiece, data.size() - off));
    check(MPI_Recv(data.data() + off, n, MPI_BYTE, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
  }
  bytes_ += static_cast<double>(data.size());
}

void MpiSession::broadcast(std::span<std::byte> data, int root) {
  for (size_t off = 0; off < data.size(); off += kPiece) {
    const auto n = static_cast<int>(std::min(kPiece, data.size() - off));
    check(MPI_Bcast(data.data() + off, n, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  bytes_ += static_cast<double>(data.size());
}

void MpiSession::abort(const std::string& message) const {
  fmt::print(stderr, "cdquant: rank {} of {}: error: {}\n", rank_, size_, message);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);  // MPI_Abort does not return; this is for the compiler
}

}  // namespace cdq
