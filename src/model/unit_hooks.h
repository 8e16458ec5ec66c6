// Calls the model makes around each parameter unit (ParamStore::units()) so that sharded
// training can hold only its own slice of the parameters and gradients: gather a unit's full
// parameters right before use, release them right after, and hand over a unit's gradient as soon
// as its backward is done. Without hooks (nullptr) the model assumes every parameter is present.
#pragma once
#include <cstdint>

namespace qv::model {

class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  // The unit's parameters are about to be read.
  virtual void gather(int unit) = 0;
  // Only some rows of a table in the unit are about to be read, in float: rows ids[0..n) (ids
  // outside [0, rows) are left to the reader to refuse) of the [rows, cols] matrix at flat
  // offset `table` (the token embedding's lookup). Nothing else of the unit is read until
  // release(). Sharded training brings back just those rows; the default gathers the unit.
  virtual void gather_rows(int unit, int64_t table, int64_t rows, int64_t cols, const int64_t* ids,
                           int64_t n) {
    (void)table, (void)rows, (void)cols, (void)ids, (void)n;
    gather(unit);
  }
  // The unit's parameters are not needed until the next gather().
  virtual void release(int unit) = 0;
  // The unit's gradient contribution of this pass is complete (called once per pass over the
  // unit in backward; the vision units once per vision-tower pass).
  virtual void grads_ready(int unit) = 0;
};

}  // namespace qv::model
