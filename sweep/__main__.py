"""`python -m sweep`: the console command without its script (e.g. with the package on PYTHONPATH only)."""
from sweep.entry import main

main()
