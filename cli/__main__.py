from closewatch.cli.main import main

main()
