/* codegen/schedule.c — the kernel schedule: which instructions share one loop nest.
 *
 * A schedule is an array of groups over the live computed instructions of a function,
 * in instruction order; each group becomes one kernel (lower.c). The base schedule is
 * one instruction per group. The fusion rule below then merges neighbours:
 *
 *   ew(a..) : T ; ew(b..) : T   ->  one loop over T     (same result shape, adjacent)
 *
 * An elementwise instruction joins the group before it when that group is elementwise
 * with the same result type. Members read earlier members' results from registers and
 * every member still stores its own result, so any later reader is unaffected; all
 * operands from outside the group come from earlier groups, since groups are runs of
 * the topological order. A group holds at most CG_MAX_GROUP instructions. */
#include "codegen/cg.h"

void cg_schedule_build(Arena *a, Func *f, const bool *computed, bool fuse, CgSchedule *s) {
  int32_t n = f->ninsts;
  s->order = arena_alloc(a, (size_t)(n + 1) * sizeof *s->order);
  s->group_start = arena_alloc(a, (size_t)(n + 2) * sizeof *s->group_start);
  s->ngroups = 0;
  int k = 0;
  for (int32_t i = 0; i < n; i++) {
    if (!computed[i]) continue;
    const Inst *in = &f->insts[i];
    bool join = false;
    if (fuse && s->ngroups > 0 && cg_op_is_ew(in) && k - s->group_start[s->ngroups - 1] < CG_MAX_GROUP) {
      const Inst *prev = &f->insts[s->order[k - 1]];
      join = cg_op_is_ew(prev) && prev->type == in->type;
    }
    if (!join) s->group_start[s->ngroups++] = k;
    s->order[k++] = i;
  }
  s->group_start[s->ngroups] = k;
}
