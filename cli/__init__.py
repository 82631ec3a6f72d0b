"""`gnctl`, the command line: argument parsing and presentation only.

Commands delegate to the packages below (lab/, gateway/, globalnet/, datapath/);
nothing here talks to the kernel or the API directly.
"""
