// MPI for `mpirun -n R cdquant quantize` (built with -DCDQ_MPI=ON): the process's MPI
// lifetime and a Communicator over MPI_COMM_WORLD.
#pragma once

#include <cdquant/communicator.hpp>
#include <string>

namespace cdq {

class MpiSession final : public Communicator {
 public:
  MpiSession(int& argc, char**& argv);  // MPI_Init
  ~MpiSession() override;               // MPI_Finalize
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send(std::span<const std::byte> data, int to) override;
  void recv(std::span<std::byte> data, int from) override;
  void broadcast(std::span<std::byte> data, int root) override;
  double bytes_moved() const override { return bytes_; }

  // Prints "cdquant: rank r of R: error: message" and ends every rank (MPI_Abort): the others
  // may be waiting on this one and would wait forever.
  [[noreturn]] void abort(const std::string& message) const;

 private:
  int rank_ = 0;
  int size_ = 1;
  double bytes_ = 0.0;
};

}  // namespace cdq
