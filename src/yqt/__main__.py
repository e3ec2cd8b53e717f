from yqt.cli import main

main()
