/* tide autograd (private to tide): the public API over the tape of ops/.
 *
 * backward.c  recording switches, gradient buffers, the backward pass
 * custom.c    user-written functions recorded like built-in ops
 * gradcheck.c the finite-difference gradient checker
 */
#ifndef TIDE_AUTOGRAD_INTERNAL_H
#define TIDE_AUTOGRAD_INTERNAL_H

#include <tide/autograd.h>

#include "ops/internal.h"

#endif
