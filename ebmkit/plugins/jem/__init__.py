"""JEM (Grathwohl et al., ICLR 2020, "Your classifier is secretly an energy based model"): a
classifier's logits as an energy, the JEM loss, and a test-accuracy evaluator."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_energies(register):
    from ebmkit.plugins.jem.classifier_energy import ClassifierEnergy

    register("classifier", ClassifierEnergy, provides=("class_logits",))


@hookimpl
def ebmkit_register_losses(register):
    from ebmkit.plugins.jem.jem import JEM

    register("jem", JEM, requires=("class_logits",))


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit.plugins.jem.accuracy import ClassificationAccuracy

    register("classification_accuracy", ClassificationAccuracy)
