// Each subcommand registers itself on the app from its own file (tools/cmd_*.cpp).
#pragma once

#include <CLI/CLI.hpp>

namespace cdq::cli {

void register_commands(CLI::App& app);

void register_layer(CLI::App& app);     // cmd_layer.cpp
void register_quantize(CLI::App& app);  // cmd_quantize.cpp
void register_eval(CLI::App& app);      // cmd_eval.cpp

}  // namespace cdq::cli
