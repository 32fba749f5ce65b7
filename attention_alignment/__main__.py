from .runner import main_exit

main_exit()
