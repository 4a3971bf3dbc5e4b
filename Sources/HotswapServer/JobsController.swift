// GET /v1/jobs/{id}: where a job is (queued, running step k of n, done, failed), for every API's
// jobs (the id is in each image response's X-Job-Id header); GET /v1/jobs/{id}/image: the PNG of
// an asynchronous job (POST /v1/images?async=true) once it is done.
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

struct JobsController<Context: RequestContext>: Sendable {
    let service: ImageService

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/jobs/:id") { _, context in try self.show(context: context) }
        router.get("/v1/jobs/:id/image") { request, context in try self.image(request: request, context: context) }
    }

    func status(_ context: Context) throws -> JobStatus {
        let id = context.parameters.get("id") ?? ""
        guard let status = service.jobs.status(id) else {
            throw APIError(.notFound, code: "job_not_found",
                           message: "no job with id '\(id.prefix(64))' (finished jobs are forgotten after the newest \(service.jobs.retainedJobs))",
                           field: "id")
        }
        return status
    }

    func show(context: Context) throws -> Response {
        let status = try status(context)
        var response = try jsonResponse(status)
        if status.state == .queued || status.state == .running { response.headers[.retryAfter] = "1" }
        return response
    }

    /// `?index=i` picks one image of a job that rendered several (default 0).
    func image(request: Request, context: Context) throws -> Response {
        let status = try status(context)
        var index = 0
        if let text = request.uri.queryParameters.get("index") {
            guard let value = Int(text), (0..<max(status.images, 1)).contains(value) else {
                throw APIError.invalidField("index", "index must be an integer in 0..<\(status.images), got '\(text.prefix(32))'")
            }
            index = value
        }
        switch status.state {
        case .queued, .running:
            throw APIError(.conflict, code: "job_not_done",
                           message: "job \(status.id) is \(status.state.rawValue) (\(Int(status.progress * 100))%); poll /v1/jobs/\(status.id)",
                           headers: [.retryAfter: "1"])
        case .failed:
            throw status.error ?? APIError(.internalServerError, code: "generation_failed", message: "job \(status.id) failed")
        case .done:
            let images = service.jobs.images(status.id)
            guard index < images.count else {
                throw APIError(.gone, code: "image_not_kept",
                               message: "job \(status.id)'s image is not kept: a job the client waited for got it in its response, and an asynchronous job's image is dropped once \(service.jobs.retainedImageBytes >> 20) MiB of newer ones are kept")
            }
            let image = images[index]
            return Response(status: .ok, headers: [.contentType: "image/png", .xJobId: status.id, .xSeed: String(image.seed)],
                            body: .init(byteBuffer: ByteBuffer(bytes: image.png)))
        }
    }
}
