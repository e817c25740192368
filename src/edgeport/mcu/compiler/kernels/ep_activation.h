/*
 * ep_activation.h: int8 activation kernels (PRELU, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH), bit-exact with LiteRT's reference kernels.
 * Included by ep_kernels.h; implemented in ep_activation.c.
 */
#ifndef EP_ACTIVATION_H
#define EP_ACTIVATION_H

#include <stdint.h>

#endif /* EP_ACTIVATION_H */
