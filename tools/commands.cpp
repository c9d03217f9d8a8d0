#include "commands.hpp"

namespace cdq::cli {

void register_commands(CLI::App& app, const std::string& exe) {
  register_layer(app);
  register_quantize(app);
  register_demo(app, exe);
  register_eval(app);
  register_generate(app);
  register_allocation(app);
}

}  // namespace cdq::cli
