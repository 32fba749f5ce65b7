from .run import main_exit

main_exit()
