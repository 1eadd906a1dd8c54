"""Command-line front ends: thin argparse layers that build a spec and call the engine."""
