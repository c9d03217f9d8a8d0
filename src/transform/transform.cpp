// Weight transforms (layer: transform -> core, linalg). Placeholder: the code comes later.
#include <cdquant/transform.hpp>

namespace cdq {}
