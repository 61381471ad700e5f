"""The run layer: configuration, strengths, calibration, the sweep over cells and its result rows."""
