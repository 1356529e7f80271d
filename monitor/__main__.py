from monitor.cli import program

program()
