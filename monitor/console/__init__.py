"""The operator console: a PySide6 window with live pyqtgraph plots, fed in-process or over MQTT."""
