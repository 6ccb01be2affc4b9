"""The commands of the closewatch CLI, one module per area; closewatch/cli.py registers them."""
