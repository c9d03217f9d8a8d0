// Weight transforms (layer: transform, below model). Placeholder: the API comes later.
#pragma once

namespace cdq {}
