/* tide: everything.  Include this, or the headers of the parts you use. */
#ifndef TIDE_TIDE_H
#define TIDE_TIDE_H

#include <tide/status.h>
#include <tide/device.h>
#include <tide/runtime.h>
#include <tide/engine.h>
#include <tide/profiler.h>
#include <tide/array.h>
#include <tide/ops.h>
#include <tide/autograd.h>
#include <tide/io.h>

#endif
