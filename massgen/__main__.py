from massgen.cli import main

main()
