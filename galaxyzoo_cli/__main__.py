from galaxyzoo_cli.cli import main

main()
