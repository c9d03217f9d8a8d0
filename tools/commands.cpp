#include "commands.hpp"

namespace cdq::cli {

void register_commands(CLI::App& app) { register_layer(app); }

}  // namespace cdq::cli
