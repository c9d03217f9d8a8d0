#include "commands.hpp"

namespace cdq::cli {

void register_layer(CLI::App& app) {
  auto* cmd = app.add_subcommand("layer", "Solve one layer problem with several methods");
  cmd->callback([] {});
}

}  // namespace cdq::cli
