"""Container init: safe volume permissions, privilege drop, PID 1 duties."""
