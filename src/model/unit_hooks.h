// Calls the model makes around each parameter unit (ParamStore::units()) so that sharded
// training can hold only its own slice of the parameters and gradients: gather a unit's full
// parameters right before use, release them right after, and hand over a unit's gradient as soon
// as its backward is done. Without hooks (nullptr) the model assumes every parameter is present.
#pragma once

namespace qv::model {

class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  // The unit's parameters are about to be read.
  virtual void gather(int unit) = 0;
  // The unit's parameters are not needed until the next gather().
  virtual void release(int unit) = 0;
  // The unit's gradient contribution of this pass is complete (called once per pass over the
  // unit in backward; the vision units once per vision-tower pass).
  virtual void grads_ready(int unit) = 0;
};

}  // namespace qv::model
