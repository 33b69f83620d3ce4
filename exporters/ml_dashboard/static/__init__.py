"""The dashboard page: HTML, CSS and JavaScript served as they are (no build step), and
uPlot (MIT, vendored from npm ``uplot`` 1.6.32 with its licence) for the time series."""
