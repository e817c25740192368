/*
 * Host harness for the @name@ library (x86_64 gcc, built with AddressSanitizer and
 * UndefinedBehaviorSanitizer by edgeport.mcu.toolchain.host from templates/host_main.c).
 *
 * Reads samples of @NAME@_INPUT_SIZE x @in_t@ from argv[1] (raw, native byte order), runs
 * @fn@ on each and prints its outputs, one sample per line, values separated by spaces.
 * Every sample gets its own buffers of exactly its size on the heap, so the sanitizer sees any
 * access past either end; the output buffer is filled with a pattern first, and the input is
 * checked to be unchanged after the call.
 * Exit status: 0 ok, 2 bad arguments or out of memory, 3 truncated input, 4 invoke failed,
 * 6 the input buffer was modified; a sanitizer finding aborts the run with its own report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "@name@.h"

typedef @in_t@ in_t;
typedef @out_t@ out_t;

int main(int argc, char **argv)
{
    const size_t n_in = @NAME@_INPUT_SIZE, n_out = @NAME@_OUTPUT_SIZE;
    in_t *x = NULL, *copy = NULL;
    out_t *y = NULL;
    FILE *in;
    int status = 0;
    if (argc != 2) return 2;
    in = fopen(argv[1], "rb");
    if (!in) return 2;
    while (status == 0) {
        size_t got, i;
        x = malloc(n_in * sizeof *x);
        copy = malloc(n_in * sizeof *copy);
        y = malloc(n_out * sizeof *y);
        if (!x || !copy || !y) {
            status = 2;
        } else if ((got = fread(x, sizeof *x, n_in, in)) != n_in) {
            status = got == 0 && feof(in) ? -1 : 3;
        } else {
            memcpy(copy, x, n_in * sizeof *x);
            memset(y, 0xA5, n_out * sizeof *y);
            if (@fn@(x, y) != 0) {
                status = 4;
            } else if (memcmp(copy, x, n_in * sizeof *x) != 0) {
                status = 6;
            } else {
                for (i = 0; i < n_out; i++) {
                    printf(i ? " " @out_fmt@ : @out_fmt@, @out_cast@y[i]);
                }
                putchar('\n');
            }
        }
        free(x);
        free(copy);
        free(y);
    }
    fclose(in);
    if (status > 0) return status;
    return fflush(stdout) != 0;
}
