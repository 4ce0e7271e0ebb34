"""The labeling interfaces prefloop ships (`<name>.xml`), installed as package data so that an
editable install, a wheel and the container image find them the same way:
`prefloop.label_config.load_label_config(name)`."""
