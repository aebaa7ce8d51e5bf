/* Portable row kernels (see mcu_conv.h): plain loops over the exported OIHW weights.
 * The oracle for the DSP kernels, and the path for cores without the DSP extension. */
#include "mcu_conv.h"

void mcu_conv1_row(const uint8_t *const rows[7], uint8_t *out, int width) {
    for (int ox = 0; ox < width; ox++)
        for (int oc = 0; oc < MCU_C1; oc++) {
            int32_t acc = mcu_conv1_bias[oc];
            for (int ky = 0; ky < 7; ky++) {
                const uint8_t *px = rows[ky] + 3 * (2 * ox);     /* padded pixel 2*ox = image x 2*ox-3 */
                for (int kx = 0; kx < 7; kx++)
                    for (int ic = 0; ic < 3; ic++) acc += px[3 * kx + ic] * mcu_conv1_weight[oc][ic][ky][kx];
            }
            out[MCU_C1 * ox + oc] = mcu_out_u8(acc, mcu_conv1_multiplier[oc], mcu_conv1_shift[oc],
                                               mcu_conv1_out_zp[oc], MCU_CONV1_RELU);
        }
}

void mcu_conv2_row(const uint8_t *const rows[5], uint8_t *out, int width) {
    for (int ox = 0; ox < width; ox++)
        for (int oc = 0; oc < MCU_C1; oc++) {
            int32_t acc = mcu_conv2_bias[oc];
            for (int ky = 0; ky < 5; ky++) {
                const uint8_t *px = rows[ky] + MCU_C1 * (4 * ox);
                for (int kx = 0; kx < 5; kx++)
                    for (int ic = 0; ic < MCU_C1; ic++) acc += px[MCU_C1 * kx + ic] * mcu_conv2_weight[oc][ic][ky][kx];
            }
            out[MCU_C1 * ox + oc] = mcu_out_u8(acc, mcu_conv2_multiplier[oc], mcu_conv2_shift[oc],
                                               mcu_conv2_out_zp[oc], MCU_CONV2_RELU);
        }
}

void mcu_conv3_row(const uint8_t *const rows[3], int8_t *out, int width, int stride) {
    for (int ox = 0; ox < width; ox++)
        for (int oc = 0; oc < MCU_CHANNELS; oc++) {
            int32_t acc = mcu_conv3_bias[oc];
            for (int ky = 0; ky < 3; ky++) {
                const uint8_t *px = rows[ky] + MCU_C1 * ox;
                for (int kx = 0; kx < 3; kx++)
                    for (int ic = 0; ic < MCU_C1; ic++) acc += px[MCU_C1 * kx + ic] * mcu_conv3_weight[oc][ic][ky][kx];
            }
            out[oc * stride + ox] = mcu_out_s8(acc, mcu_conv3_multiplier[oc], mcu_conv3_shift[oc],
                                            mcu_conv3_out_zp[oc], MCU_CONV3_RELU);
        }
}
