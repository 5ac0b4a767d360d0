"""The CDK app's constructs: one module per capability, composed by `photo_labeller_stack.PhotoLabellerStack`."""
