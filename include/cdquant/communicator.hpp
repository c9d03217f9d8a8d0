// The processes that quantize one model together (cdquant quantize under mpirun): each holds a
// shard of the calibration windows, rank 0 writes the output. The transport (MPI) lives outside
// the library's layers; one process needs none (a null Communicator* means rank 0 of 1).
#pragma once

#include <cstddef>
#include <span>

namespace cdq {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Blocking, in order between each pair of ranks; sizes must match on both ends.
  virtual void send(std::span<const std::byte> data, int to) = 0;
  virtual void recv(std::span<std::byte> data, int from) = 0;
  // Every rank calls it with a buffer of the same size; root's bytes end up everywhere.
  virtual void broadcast(std::span<std::byte> data, int root) = 0;
  // Bytes this rank has sent and received so far (broadcasts count what passed through it).
  virtual double bytes_moved() const = 0;
};

}  // namespace cdq
