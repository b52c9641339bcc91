"""One module per CLI subcommand; each defines `add_to(subparsers)`. See `secvec_bench.cli`."""
