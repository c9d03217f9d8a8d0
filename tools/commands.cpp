#include "commands.hpp"

namespace cdq::cli {

void register_commands(CLI::App& app) {
  register_layer(app);
  register_quantize(app);
  register_eval(app);
}

}  // namespace cdq::cli
