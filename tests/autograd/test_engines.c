#include "ag.h"
