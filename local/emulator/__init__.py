"""The local stack: moto with the template's resources, Lambda and Batch Transform stand-ins, servers."""
