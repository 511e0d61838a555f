"""Image datasets (the procedural shapes dataset, shipped; scikit-learn's digits; MNIST, Fashion-MNIST,
CIFAR-10/100, SVHN, image folders (labelled by class folder or not), CelebA and CelebA-HQ attributes;
a user's own arrays from .npy, .npz or .safetensors files; noise and constant images; another dataset's
images made grey, blurred or inverted) and image
evaluators (sample grids, curves, attribute classifier, OOD detection)."""

from ebmkit import hookimpl


@hookimpl
def ebmkit_register_datasets(register):
    from ebmkit.plugins.images.array import ArrayDataset
    from ebmkit.plugins.images.celebahq import celebahq_attributes
    from ebmkit.plugins.images.cifar10 import Cifar10
    from ebmkit.plugins.images.cifar100 import Cifar100
    from ebmkit.plugins.images.digits import Digits
    from ebmkit.plugins.images.folder import CELEBAHQ, LSUN_BEDROOM, celeba_attributes, image_folder
    from ebmkit.plugins.images.mnist import FashionMnist, Mnist
    from ebmkit.plugins.images.shapes import Shapes
    from ebmkit.plugins.images.svhn import Svhn
    from ebmkit.plugins.images.synthetic_ood import ConstantImages, UniformNoise
    from ebmkit.plugins.images.transformed import TransformedImages

    register("shapes", Shapes)
    register("digits", Digits)
    register("mnist", Mnist)
    register("fashion_mnist", FashionMnist)
    register("array", ArrayDataset, summary="Your own samples from a .npy, .npz or .safetensors file (any shape), with optional labels")
    register("cifar10", Cifar10)
    register("cifar100", Cifar100)
    register("svhn", Svhn)
    register("image_folder", image_folder)
    register("celebahq", CELEBAHQ, params=CELEBAHQ.params, summary="CelebA-HQ: a folder of face images (128 px by default)")
    register("lsun_bedroom", LSUN_BEDROOM, params=LSUN_BEDROOM.params, summary="LSUN bedroom: a folder of images (128 px by default)")
    register("celeba_attributes", celeba_attributes, params=celeba_attributes.params)
    register("celebahq_attributes", celebahq_attributes, params=celebahq_attributes.params)
    register("uniform_noise", UniformNoise)
    register("constant_images", ConstantImages)
    register("transformed", TransformedImages)


@hookimpl
def ebmkit_register_evaluators(register):
    from ebmkit.plugins.images.attribute_classifier import AttributeClassifier
    from ebmkit.plugins.images.classifier_quality import ClassifierQuality
    from ebmkit.plugins.images.curves import TrainingCurves
    from ebmkit.plugins.images.fidelity import FID, KID, InceptionScore
    from ebmkit.plugins.images.ood import OODDetection
    from ebmkit.plugins.images.sample_grid import SampleGrid

    register("sample_grid", SampleGrid)
    register("curves", TrainingCurves)
    register("attribute_classifier", AttributeClassifier)
    register("fid", FID, summary="Fréchet Inception Distance of samples to a reference set (torch-fidelity), with its protocol")
    register("kid", KID, summary="Kernel Inception Distance of samples to a reference set (torch-fidelity), with its protocol")
    register("inception_score", InceptionScore, summary="Inception Score of samples (torch-fidelity), with its protocol")
    register("ood", OODDetection, summary="AUROC of the energy between a test set and out-of-distribution sets, with score histograms")
    register("classifier_quality", ClassifierQuality,
             summary="Fréchet distance of small images in a data-trained classifier's features, with its floor and ceiling; class coverage")
