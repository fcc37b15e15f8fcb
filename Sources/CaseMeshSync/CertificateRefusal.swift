/// Why a node's certificate was refused, as far as a receiver of its seals needs to
/// know: whether the refusal lasts.
///
/// A certificate that is revoked, expired, not issued by the consortium CA or that
/// names another replica never verifies again, so the changes sealed under it are
/// refused for good and a receiver's pull cursor passes them. A refusal that may go
/// (the receiver's CRL is out of date, the certificate is not valid yet by the
/// receiver's clock) holds them back to be fetched again.
public protocol CertificateRefusal: Error {
    /// Whether the certificate can never verify again.
    var isLasting: Bool { get }
}
