/* vikt: inspect and compare safetensors files from the command line; see
 * cli.c and `vikt --help`. */
#include "cli.h"

int main(int argc, char **argv) { return vikt__cli_main(argc, argv, stdout, stderr, NULL); }
