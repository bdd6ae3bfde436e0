"""`promote calibrate`: show a contract passes conforming kernels and fails faulty ones, and derive
its bounds from honest runs (docs/calibration.md)."""
