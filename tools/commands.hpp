// Each subcommand registers itself on the app from its own file (tools/cmd_*.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cdquant/communicator.hpp>
#include <string>

namespace cdq::cli {

// exe: argv[0], used to find ../shared/models beside the checkout.
void register_commands(CLI::App& app, const std::string& exe);

// The processes of `mpirun -n R cdquant quantize` (null: one process), set by main.
Communicator* communicator();
void set_communicator(Communicator* comm);

void register_layer(CLI::App& app);                         // cmd_layer.cpp
void register_quantize(CLI::App& app);                      // cmd_quantize.cpp
void register_demo(CLI::App& app, const std::string& exe);  // cmd_demo.cpp
void register_eval(CLI::App& app);                          // cmd_eval.cpp
void register_generate(CLI::App& app);                      // cmd_generate.cpp
void register_allocation(CLI::App& app);                    // cmd_allocation.cpp

}  // namespace cdq::cli
