from ocislim.cli import main

main()
