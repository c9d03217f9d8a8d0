#include "commands.hpp"

namespace cdq::cli {

namespace {
Communicator* g_comm = nullptr;
}

Communicator* communicator() {
  return g_comm;
}
void set_communicator(Communicator* comm) {
  g_comm = comm;
}

void register_commands(CLI::App& app, const std::string& exe) {
  register_layer(app);
  register_quantize(app);
  register_demo(app, exe);
  register_eval(app);
  register_generate(app);
  register_allocation(app);
}

}  // namespace cdq::cli
