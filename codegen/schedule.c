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
 * the topological order. A group holds at most CG_MAX_GROUP instructions.
 *
 *   matmul : T[M,N] ; ew(..) : T ...  ->  one GEMM, the ew members in its epilogue
 *
 * An elementwise instruction of the product's result type joins a group headed by a
 * matrix product when each operand from outside the group is read by tile index (same
 * shape), by column (a bias row) or is one element (cg_epi_operand): the GEMM applies
 * the members to each C tile as soon as the tile is final (bias add, activation; in
 * backward the activation derivative on the product that produces dy). */
#include "codegen/cg.h"

bool cg_op_is_matmul(Func *f, int32_t v) {
  const Inst *in = &f->insts[v];
  const TensorType *t = ir_vtype(f, v);
  return (in->op == OP_MATMUL || in->op == OP_MATMUL_NT || in->op == OP_MATMUL_TN) && t->rank == 2 && t->dtype == DT_F32;
}

int cg_epi_operand(const TensorType *t, const TensorType *o) {
  if (t->dtype != DT_F32) return -1;
  bool same = t->rank == o->rank;
  for (int i = 0; same && i < t->rank; i++) same = t->dims[i] == o->dims[i];
  if (same) return CG_EPI_MAT;
  if ((t->rank == 1 && t->dims[0] == o->dims[1]) || (t->rank == 2 && t->dims[0] == 1 && t->dims[1] == o->dims[1]))
    return CG_EPI_ROW;
  bool one = true;
  for (int i = 0; one && i < t->rank; i++) one = t->dims[i] == 1;
  return one ? CG_EPI_ONE : -1;
}

/* in may join the epilogue of the group order[start..k) headed by a product */
static bool epi_joins(Func *f, const CgSchedule *s, int start, int k, const Inst *in) {
  const Inst *head = &f->insts[s->order[start]];
  if (!cg_op_is_ew(in) || in->type != head->type) return false;
  for (int a = 0; a < in->nargs; a++) {
    bool member = false;
    for (int m = start; m < k && !member; m++) member = s->order[m] == in->args[a];
    if (!member && cg_epi_operand(ir_vtype(f, in->args[a]), ir_vtype(f, s->order[start])) < 0) return false;
  }
  return true;
}

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
      int start = s->group_start[s->ngroups - 1];
      const Inst *prev = &f->insts[s->order[k - 1]];
      if (cg_op_is_matmul(f, s->order[start])) join = epi_joins(f, s, start, k, in);
      else join = cg_op_is_ew(prev) && prev->type == in->type;
    }
    if (!join) s->group_start[s->ngroups++] = k;
    s->order[k++] = i;
  }
  s->group_start[s->ngroups] = k;
}
