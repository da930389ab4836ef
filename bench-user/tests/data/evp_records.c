/* A program that encrypts a known number of records through the system's
 * libcrypto (OpenSSL 3), for bench-user/tests/probes.rs. Compiled by the
 * test with `cc -O2 evp_records.c -lcrypto`.
 *
 *   evp_records CIPHER_RECORDS UPDATE_RECORDS SIZE
 *
 * Prints "ready", waits for one byte on stdin, encrypts CIPHER_RECORDS
 * records of SIZE bytes with EVP_Cipher and then UPDATE_RECORDS with
 * EVP_CipherUpdate (which in OpenSSL 3 tail-calls EVP_EncryptUpdate), all
 * AES-256-CTR, prints "done", and exits when stdin closes (so that
 * its mappings can be read while it lives). Key and IV are fixed: no
 * random generator runs, whose DRBG would call EVP_CipherUpdate itself. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: evp_records CIPHER_RECORDS UPDATE_RECORDS SIZE\n");
        return 2;
    }
    long cipher_records = atol(argv[1]);
    long update_records = atol(argv[2]);
    int size = atoi(argv[3]);
    if (cipher_records < 0 || update_records < 0 || size <= 0) {
        fprintf(stderr, "evp_records: counts must be >= 0 and SIZE > 0\n");
        return 2;
    }
    unsigned char key[32] = {1, 2, 3};
    unsigned char iv[16] = {4, 5, 6};
    unsigned char *in = calloc((size_t)size, 1);
    unsigned char *out = malloc((size_t)size);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (in == NULL || out == NULL || ctx == NULL ||
        EVP_CipherInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv, 1) != 1) {
        fprintf(stderr, "evp_records: cipher set-up failed\n");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1) {
        return 1;
    }
    for (long i = 0; i < cipher_records; i++) {
        if (EVP_Cipher(ctx, out, in, (unsigned int)size) <= 0) {
            fprintf(stderr, "evp_records: EVP_Cipher failed\n");
            return 1;
        }
    }
    for (long i = 0; i < update_records; i++) {
        int outl = 0;
        if (EVP_CipherUpdate(ctx, out, &outl, in, size) != 1 || outl != size) {
            fprintf(stderr, "evp_records: EVP_CipherUpdate failed\n");
            return 1;
        }
    }
    printf("done\n");
    fflush(stdout);
    while (read(0, &go, 1) > 0) {
    }
    EVP_CIPHER_CTX_free(ctx);
    free(in);
    free(out);
    return 0;
}
