"""Pure data and validation: names, config keys, states, errors. No I/O."""
