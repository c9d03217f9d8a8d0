// Finds the embedded default models: $CDQUANT_MODELS, then ../shared/models (beside the
// checkout, from the working directory or the executable), then a cache filled once from the
// model's public home when the machine is online.
#pragma once

#include <string>

namespace cdq {

struct KnownModel {
  std::string name;            // "stories260K", "babyllama-tok105"
  std::string model_file;      // relative to a models directory
  std::string tokenizer_file;  // relative to a models directory
  std::string model_url;       // public home ("" when none)
  std::string tokenizer_url;
};

// The known default models by name; throws Error listing the names for an unknown one.
const KnownModel& known_model(const std::string& name);

struct LocatedModel {
  std::string model_path;
  std::string tokenizer_path;
};

// Locates a known model. Throws Error with exact instructions when it is nowhere and cannot
// be downloaded.
LocatedModel locate_model(const std::string& name, const std::string& exe_path = "");

}  // namespace cdq
