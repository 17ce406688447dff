/* The optimizer's private structure and what checkpoints (src/io/checkpoint.c)
 * need to save and restore it: the rule's name, its hyperparameters by name
 * and their validation, and the names of its per-parameter state buffers.
 * Nothing here is installed. */
#ifndef VIKT_OPTIM_H
#define VIKT_OPTIM_H

#include "../vikt_internal.h"

#include <stddef.h>
#include <stdint.h>

enum {
    VIKT__OPT_NPARAM = VIKT_OPT_SKIPPED_STEPS + 1, /* entries of vikt_optimizer.hp */
    VIKT__OPT_NBUF = 3,                            /* state buffers per parameter, at most */
    VIKT__OPT_NKIND = VIKT_OPTIM_ADAMW + 1
};

/* One parameter's state. Buffers by rule: SGD {momentum}; AdaGrad {sum};
 * RMSProp {square_avg, momentum, grad_avg}; Adam(W) {exp_avg, exp_avg_sq,
 * max_exp_avg_sq}. */
typedef struct vikt__slot {
    float *buf[VIKT__OPT_NBUF]; /* allocated when first needed, else NULL */
    int64_t numel;              /* the parameter's, for freeing */
    int64_t step;               /* updates this parameter received (torch's state["step"]) */
    unsigned live;              /* bit b: buf[b] holds state; otherwise it is initialized on use */
} vikt__slot;

struct vikt_optimizer {
    vikt_model *model;
    vikt_optim_kind kind;
    double hp[VIKT__OPT_NPARAM]; /* hyperparameters; the read-only entries are unused */
    vikt__slot *slots;           /* one per registry index below nslots */
    int64_t nslots;
    int64_t steps;   /* steps taken: the schedule position */
    int64_t skipped; /* steps skipped for non-finite gradients */
};

/* "SGD", "AdaGrad", "RMSProp", "Adam", "AdamW". */
const char *vikt__optim_kind_name(int kind);
/* "lr", "weight_decay", … as vikt_optim_param names them. */
const char *vikt__optim_param_name(int param);
/* 1 if the rule uses param and it can be set: what a checkpoint stores. */
int vikt__optim_param_stored(int kind, int param);
/* torch's name of state buffer b of the rule ("exp_avg", …), NULL if none. */
const char *vikt__optim_buffer_name(int kind, int b);
/* Check every stored hyperparameter of hp for the rule (ranges and the
 * combinations vikt_optimizer_set refuses): VIKT_OK, or VIKT_ERR_ARG with
 * the reason written to why ("beta1 must be in [0, 1), got 1"). */
int vikt__optim_check(int kind, const double *hp, char *why, size_t size);
/* Free one slot's buffers. */
void vikt__optim_slot_free(vikt_model *m, vikt__slot *s);

#endif
