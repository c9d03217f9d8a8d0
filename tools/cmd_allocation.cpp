// cdquant allocation: prints the size-budget allocation plan stored in a GGUF file or a GPTQ
// checkpoint (what --target-bpw / --target-size chose), as JSON.
#include <fmt/core.h>

#include <cdquant/allocation_job.hpp>
#include <cdquant/error.hpp>

#include "commands.hpp"

namespace cdq::cli {

void register_allocation(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "allocation", "Print the allocation plan (tensor, type, predicted KL) stored in a file");
  cmd->add_option("file", *path, "GGUF file or GPTQ checkpoint directory")->required();
  cmd->callback([path] {
    const nlohmann::json plan = read_allocation(*path);
    CDQ_CHECK(!plan.is_null(), "{}: holds no allocation plan (not written with a size budget)",
              *path);
    fmt::print("{}\n", plan.dump(1));
  });
}

}  // namespace cdq::cli
