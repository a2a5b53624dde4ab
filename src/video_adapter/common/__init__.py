"""The foundation every layer may import: parsing configs, writing files atomically, devices, the learning-rate
schedule and markdown tables. It imports nothing else of the package."""
